package postgres

// ScramVerifier exposes the verifier computation so a test can compare it
// with the one PostgreSQL computes for the same password and salt.
var ScramVerifier = scramVerifier
