import { describeLockBackendConformance } from '../../../lib/testing';
import { postgresTarget } from '../../contract/conformance.targets';
import { jestApi } from '../../support/jest-api';

describeLockBackendConformance(jestApi, postgresTarget());
