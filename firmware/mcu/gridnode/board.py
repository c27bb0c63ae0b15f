# Board glue: the only module that touches ``machine``, ``socket`` and ``ssl``.
import gc
import socket
import sys
import time

import machine

# machine.reset_cause() values, by the names the status reports (protocol §3.7 health)
_WDT_MAX_MS = {"rp2": 8388}   # ports whose watchdog cannot wait longer
_CAUSES = (("PWRON_RESET", "power_on"), ("HARD_RESET", "hard"), ("WDT_RESET", "watchdog"),
           ("DEEPSLEEP_RESET", "deep_sleep"), ("SOFT_RESET", "soft"))

# MicroPython ports count time from 2000-01-01 or from 1970-01-01.
_EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0
_CLOCK_VALID_AFTER = 1704067200  # 2024-01-01: an RTC before that was never set


class Board:
    def __init__(self, tls=None, wifi=None):
        # tls: None, or {"ca": path, "cert": path, "key": path} on the board's flash
        # wifi: None (a port with its own link, or the simulated board) or {"ssid", "psk"}
        self.tls = tls
        self.wifi = wifi
        self.wdt = None

    def network_up(self, timeout_ms=15000):
        # Join the provisioned Wi-Fi (Pico W, ESP32); OSError when it does not come up.
        if not self.wifi:
            return
        import network

        sta = network.WLAN(network.STA_IF)
        sta.active(True)
        if not sta.isconnected():
            sta.connect(self.wifi["ssid"], self.wifi["psk"])
            waited = 0
            while not sta.isconnected():
                if waited >= timeout_ms:
                    raise OSError(110)  # ETIMEDOUT: no Wi-Fi
                self.feed()
                time.sleep_ms(100)
                waited += 100

    def woke_from_deepsleep(self):
        return machine.reset_cause() == machine.DEEPSLEEP_RESET

    def reset_cause(self):
        # why the board last started, by name; "unknown" for a cause this port has no name for
        cause = machine.reset_cause()
        for attr, name in _CAUSES:
            if getattr(machine, attr, None) == cause:
                return name
        return "unknown"

    def mem_free(self):
        gc.collect()
        try:
            return gc.mem_free()
        except AttributeError:
            return None

    def start_watchdog(self, timeout_ms):
        # The hardware watchdog: the board resets unless fed within timeout_ms.  Once
        # started it cannot be stopped; a deep sleep (a reset) ends it.  None where the
        # port has no machine.WDT.  Capped at the port's longest (RP2040: 8.3 s).
        if not hasattr(machine, "WDT"):
            return None
        timeout_ms = min(timeout_ms, _WDT_MAX_MS.get(sys.platform, timeout_ms))
        self.wdt = machine.WDT(timeout=timeout_ms)
        return self.wdt

    def feed(self):
        if self.wdt is not None:
            self.wdt.feed()

    def input_pin(self, num, pull):
        p = {"up": machine.Pin.PULL_UP, "down": machine.Pin.PULL_DOWN}.get(pull)
        return machine.Pin(num, machine.Pin.IN, p)

    def unix_time(self):
        # (seconds, valid): valid is False while the RTC was never set
        t = time.time() + _EPOCH_OFFSET
        return t, t >= _CLOCK_VALID_AFTER

    def sleep_ms(self, ms):
        # fed every second: a wait is not a hang
        while ms > 0:
            self.feed()
            step = min(ms, 1000)
            time.sleep_ms(step)
            ms -= step

    def random_bytes(self, n):
        # the port's random source (ESP32, RP2: the hardware RNG); a new key needs it
        import os

        return os.urandom(n)

    def open_socket(self, host, port, timeout, tls=None):
        # tls: {"ca", "cert", "key"} in place of self.tls (a trial of a new certificate)
        tls = tls or self.tls
        self.network_up()
        addr = socket.getaddrinfo(host, port)[0][-1]
        s = socket.socket()
        s.settimeout(timeout)
        try:
            s.connect(addr)
            if tls:
                s = self._wrap(s, host, tls)
        except BaseException:
            s.close()
            raise
        return s

    def _wrap(self, s, host, tls):
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=tls["ca"])
        ctx.load_cert_chain(tls["cert"], tls["key"])
        return ctx.wrap_socket(s, server_hostname=host)

    def set_clock(self):
        # Set the RTC from NTP when the port has it; keep going without.
        try:
            self.network_up()
            import ntptime

            ntptime.settime()
        except (ImportError, OSError):
            pass

    def deepsleep(self, ms, wake_pin=None, wake_level=0):
        # Sleep until ``ms`` passes or the tilt pin changes (where the port can wake on a pin).
        if wake_pin is not None:
            try:
                import esp32

                esp32.wake_on_ext0(pin=wake_pin, level=wake_level)
            except ImportError:
                pass
        machine.deepsleep(ms)
