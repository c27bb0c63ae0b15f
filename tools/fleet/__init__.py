"""``gridlink fleet``: update keys, signed releases in a TUF repository, their checks."""
