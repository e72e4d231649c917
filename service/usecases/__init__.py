"""Use cases: one function per operation that changes state or reads personal data. Each takes
a Tx (the transaction, the caller, the time, the request) and a plain command, and returns
plain data; what happened is recorded through the Tx, in the same transaction."""
