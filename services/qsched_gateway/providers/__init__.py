"""Provider adapters, one per SDK: local (qiskit-aer), braket, ibm, azure, ionq."""
