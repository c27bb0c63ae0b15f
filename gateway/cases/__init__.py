"""Cases after 立案: the lifecycle table, the case book (store), departments and deadlines."""
