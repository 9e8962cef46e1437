/** @type {import('jest').Config} */
module.exports = {
  rootDir: '.',
  testEnvironment: 'node',
  testMatch: ['<rootDir>/test/**/*.spec.ts'],
  // The bad-input table runs on its own, under --detectOpenHandles (see the test script); the
  // consumer apps on their own too (npm run test:consumers: they install packages).
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/test/bad-input/', '<rootDir>/test/consumers/'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.json' }] },
  moduleFileExtensions: ['ts', 'js', 'json'],
  testTimeout: 30_000,
  // Suites that start servers share the machine's Redis and PostgreSQL; two workers keep them calm.
  maxWorkers: 2,
};
