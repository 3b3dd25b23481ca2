"""ASC X12 5010 (claims, remittances, eligibility, enrollment): issue 16, in progress."""
