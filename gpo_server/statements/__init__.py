"""Bank statements GPO reconciles its payments against: camt.053 and MT940, parsed into one entry record."""
