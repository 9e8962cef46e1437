import { clientCaseDefinitions } from './client-cases';
import { describeFaultCases } from './fault-suite';

describeFaultCases(
  'PostgreSQL lock histories with adversarial clients and hostile settings',
  clientCaseDefinitions().filter((d) => d.backend === 'postgres'),
);
