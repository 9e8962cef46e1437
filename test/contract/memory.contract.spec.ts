import { describeLockBackendConformance } from '../../lib/testing';
import { jestApi } from '../support/jest-api';
import { memoryTarget } from './conformance.targets';

describeLockBackendConformance(jestApi, memoryTarget());
