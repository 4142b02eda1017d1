"""Pure domain rules: money, payment states, validation, routing. No I/O lives here."""
