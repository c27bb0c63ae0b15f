"""The checks a new version must pass on its first boot before it marks itself good
(``slots.commit_if_healthy``): each is a callable that returns, or raises saying what is
wrong.  The runtime builds the dict of checks from its parts; tests inject their own."""

import secrets
import threading
import time

from ..core.outbox import Outbox


def outbox_opens(data_dir):
    """The outbox opens and reads (it is not written)."""
    def check():
        outbox = Outbox(str(data_dir) + "/outbox")
        try:
            return outbox.depth() >= 0
        finally:
            outbox.close()
    return check


def broker_round_trip(host, port, client_id, topic, tls=None, timeout=10.0):
    """Connect, subscribe to ``topic`` (one the device may publish and read), publish a
    nonce there and receive it back.  ``tls``: (ca, cert, key) file names, or None."""
    def check():
        import paho.mqtt.client as mqtt

        nonce = secrets.token_hex(8).encode()
        got, ready = threading.Event(), threading.Event()
        errors = []
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if tls:
            ca, cert, key = tls
            client.tls_set(ca_certs=ca, certfile=cert, keyfile=key)

        def on_connect(c, _userdata, _flags, reason, _props):
            if reason.is_failure:
                errors.append(f"connect refused: {reason}")
                ready.set()
                return
            c.subscribe(topic, qos=1)

        def on_subscribe(c, _userdata, _mid, reasons, _props):
            if any(r.is_failure for r in reasons):
                errors.append(f"subscribe to {topic} refused")
            else:
                c.publish(topic, nonce, qos=1)
            ready.set()

        def on_message(_c, _userdata, msg):
            if msg.payload == nonce:
                got.set()

        client.on_connect, client.on_subscribe = on_connect, on_subscribe
        client.on_message = on_message
        try:
            client.connect(host, port, keepalive=30)
        except OSError as exc:
            raise ConnectionError(f"broker {host}:{port}: {exc}") from None
        client.loop_start()
        try:
            if not got.wait(timeout) or errors:
                raise ConnectionError(errors[0] if errors else
                                      f"no round trip through {host}:{port} in {timeout:g} s")
        finally:
            client.disconnect()
            client.loop_stop()
        return True
    return check


def gnss_reading(reader, max_age=30.0):
    """The GNSS reader (``gnss.GnssReader``) has a position fix no older than ``max_age``."""
    def check():
        fix, age = reader.snapshot()
        if fix is None:
            raise RuntimeError("no GNSS fix yet")
        if age > max_age:
            raise RuntimeError(f"the last GNSS fix is {age:.0f} s old")
        return True
    return check


def camera_captures(camera):
    """The camera (``camera.make_camera``) takes a picture."""
    def check():
        img = camera.capture()
        if img is None or not all(img.size):
            raise RuntimeError("the camera returned no picture")
        return True
    return check


def patiently(check, seconds, every=0.5):
    """``check`` tried again every ``every`` seconds until it passes or ``seconds`` are
    over (a fix or a connection may come a little after start); then its last error."""
    def patient():
        end = time.monotonic() + seconds
        while True:
            try:
                if check() is not False:
                    return True
                problem = RuntimeError("returned False")
            except Exception as exc:
                problem = exc
            if time.monotonic() + every > end:
                raise problem
            time.sleep(every)
    return patient


def connected(delivery):
    """The device's own MQTT connection is up (its CONNACK came back)."""
    def check():
        if not delivery.connected:
            raise ConnectionError("not connected to the broker")
        return True
    return check


def outbox_reads(store):
    """The running device's outbox (held open by its store) answers its depth."""
    def check():
        depth = store.depth()
        return depth["reports"] >= 0 and depth["track"] >= 0
    return check
