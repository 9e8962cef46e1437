import { describeLockBackendConformance } from '../../../lib/testing';
import { redisTarget } from '../../contract/conformance.targets';
import { jestApi } from '../../support/jest-api';

describeLockBackendConformance(jestApi, redisTarget());
