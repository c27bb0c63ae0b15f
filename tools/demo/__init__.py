"""The district demo (``gridlink demo``): a broker, the gateway and a simulated fleet on one
machine.  It is no part of the gateway or the firmware: it starts them as a user would.

cli.py holds the command, district.py the running district, loop.py the supervision
loop's simulated people (over HTTP), pki.py its throw-away CA.
"""
