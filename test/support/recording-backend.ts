// Moved to the conformance kit (lib/testing/), which the suites in test/ share.
export * from '../../lib/testing/recording-backend';
