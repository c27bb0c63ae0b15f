"""District-centre gateway: broker → validated, exactly-once intake queue."""
