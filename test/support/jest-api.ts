import type { ConformanceTestApi } from '../../lib/testing';

/** jest's globals, as the conformance kit takes them (and a compile-time check that they fit its shape). */
export const jestApi: ConformanceTestApi = { describe, it, expect, beforeEach, afterEach, afterAll };
