import { faultCaseDefinitions } from './fault-cases';
import { describeFaultCases } from './fault-suite';

describeFaultCases(
  'PostgreSQL lock histories under faults',
  faultCaseDefinitions().filter((d) => d.backend === 'postgres'),
);
