"""Host-only tools: they run on a technician's or the centre's computer, never on a device.

gridcompile.py compiles GIS grid layers into grid maps (pyproj, shapely); grid_cli.py,
nmea_cli.py and codes_cli.py are the ``gridlink grid``, ``nmea`` and ``codes`` commands;
make_shangjie.py makes the shipped sample map of 上街区.  Their errors derive from
:class:`gridlink.host.errors.HostError`.
"""
