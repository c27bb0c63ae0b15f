# The node's certificate renewal over MQTT (protocol §3.10), with no visit.  When the
# certificate in use ends within renew_before_days (its notAfter read from the DER on
# flash, gridcore.certs), the node makes a new P-256 key (gridcore.p256, from the board's
# os.urandom; renew.key, never sent) and sends a CSR for it on …/csr, again each
# ask_every_s until answered (its persistent session keeps the answer while it sleeps).
# The centre's …/cert is taken only when the certificate is for the new key, names this
# node, is valid now and (with a P-256 CA) is signed by its CA, and a connection to the
# broker with it succeeds.  Then the new key and certificate are written to id-N.key and
# id-N.pem and identity.json, which names them, is renamed over the old one: a power cut
# leaves the old identity or the new one.  A refusal leaves the old one in use; why is
# kept in renewal.json and reported in the status (cert.failed).
import json

from gridcore import certs, fsio, messages
from gridcore.errors import CoreError
from gridcore.timefmt import iso_utc

NEW_KEY = "renew.key"
IDENTITY = "identity.json"
STATE = "renewal.json"
ASK_EVERY_S = 3600
RENEW_BEFORE_DAYS = 30


def _read_text(path):
    data = fsio.read_file(path)
    return None if data is None else data.decode()


class Renewal:
    def __init__(self, data_dir, device, tls, random_bytes, renew_before_days=None,
                 ask_every_s=None, log=print, tick=None):
        # tls: the provisioned {"ca", "cert", "key"} paths; random_bytes(n): the board's
        # os.urandom; tick(): fed during the long computations (the watchdog)
        self.dir = data_dir.rstrip("/") or "/"
        self.device = device
        self.ca = tls["ca"]
        self.provisioned = {"cert": tls["cert"], "key": tls["key"]}
        self.random_bytes = random_bytes
        days = RENEW_BEFORE_DAYS if renew_before_days is None else renew_before_days
        self.before_s = days * 86400
        self.ask_every_s = ASK_EVERY_S if ask_every_s is None else ask_every_s
        self.log = log
        self.tick = tick
        self.answer = None     # the centre's cert message of this wake
        self.changed = False   # failed or identity changed in this wake
        st = self._state()
        self.asked, self.failed = st.get("asked"), st.get("failed")
        self.own = self._kept()
        self._cert = None
        self._drop_stale_key()

    # -- what is on flash
    def _path(self, name):
        return fsio.join(self.dir, name)

    def _state(self):
        try:
            return json.loads(fsio.read_file(self._path(STATE)) or b"{}")
        except ValueError:
            return {}

    def _save(self):
        try:  # noqa: SIM105 (no contextlib on MicroPython)
            fsio.write_file(self._path(STATE), json.dumps(
                {"asked": self.asked, "failed": self.failed}).encode(), self.dir)
        except OSError:
            pass   # a full flash: reported from memory in this wake's status all the same

    def _kept(self):
        # identity.json's {"n", "cert", "key"} when both files are there and the
        # certificate is for the key; else None (the provisioned files are used)
        try:
            own = json.loads(fsio.read_file(self._path(IDENTITY)) or b"null")
            if own is None:
                return None
            cert, key = _read_text(own["cert"]), _read_text(own["key"])
            if certs.facts(cert)["public"] != certs.read_key(key)[1]:
                raise CoreError("the certificate is not for the key")
            return own
        except (ValueError, KeyError, TypeError, AttributeError, CoreError) as e:
            self.log("identity.json not used (" + str(e) + "): the provisioned certificate is")
            return None

    def _drop_stale_key(self):
        # a new key the certificate in use is already for (a cut after the switch)
        key = _read_text(self._path(NEW_KEY))
        if key is None or self.cert_facts() is None:
            return
        try:
            if certs.read_key(key)[1] == self.cert_facts()["public"]:
                fsio.remove(self._path(NEW_KEY))
        except CoreError:
            fsio.remove(self._path(NEW_KEY))

    def files(self):
        # {"ca", "cert", "key"} in use: the renewed identity when there is one
        own = self.own or self.provisioned
        return {"ca": self.ca, "cert": own["cert"], "key": own["key"]}

    def cert_facts(self):
        if self._cert is None:
            try:
                self._cert = certs.facts(_read_text(self.files()["cert"]) or "")
            except CoreError as e:
                self.log("certificate unreadable:", e)
        return self._cert

    def expires(self):
        f = self.cert_facts()
        return None if f is None else f["not_after"]

    def status(self):
        # the status's cert (protocol §3.7): when the certificate in use ends, and why the
        # last renewal did not take
        end = self.expires()
        return {"expires": iso_utc(end) if end is not None else None, "failed": self.failed}

    def due(self, now):
        end = self.expires()
        return now is not None and end is not None and end - now <= self.before_s

    def waiting(self):
        # a request is out (its key on flash): the answer is listened for
        return fsio.exists(self._path(NEW_KEY))

    # -- asking
    def request(self, now):
        # The csr message to send now, or None (not due, asked recently, no clock).
        if not self.due(now):
            return None
        if self.asked is not None and 0 <= now - self.asked < self.ask_every_s:
            return None
        try:
            d, q = certs.read_key(_read_text(self._path(NEW_KEY)) or "")
        except CoreError:
            d, q = certs.p256.private_key(self.random_bytes, self.tick)
            fsio.write_file(self._path(NEW_KEY), certs.key_pem(d, q).encode(), self.dir)
        if self.tick:
            self.tick()
        csr = certs.csr_pem(d, q, self.device, self.tick)
        return messages.encode(messages.make_csr(self.device, csr))

    def asked_at(self, now):
        self.asked = now
        self._save()
        self.log("certificate ends", iso_utc(self.expires())[:10], "- asked for a new one")

    def on_cert(self, msg):
        try:
            self.answer = messages.decode(bytes(msg), messages.validate_cert,
                                          messages.CERT_MAX_BYTES)
        except CoreError as e:
            self.log("bad cert message", e)

    # -- taking the answer
    def check(self, now):
        # The new identity's {"cert", "key"} PEM text when this wake's answer is one to
        # try, else None (why in failed).  The answer is used once.
        answer, self.answer = self.answer, None
        if answer is None:
            return None
        if answer["device"] != self.device:
            return self.fail("the answer is for " + answer["device"])
        if "refused" in answer:
            return self.fail("refused by the centre: " + answer["refused"])
        key = _read_text(self._path(NEW_KEY))
        if key is None:   # a second answer (asked again before the first came): taken
            self.log("a certificate for no open request: ignored")
            return None
        try:
            got = certs.facts(answer["cert"])
            mine = certs.read_key(key)[1]
            ca = certs.facts(_read_text(self.ca) or "")
        except CoreError as e:
            return self.fail("certificate unreadable: " + str(e))
        if got["public"] != mine:
            return self.fail("the certificate is not for this node's new key")
        if got["cn"] != self.device:
            return self.fail("the certificate is not this node's (CN " + repr(got["cn"]) + ")")
        if now is None or not got["not_before"] <= now <= got["not_after"]:
            return self.fail("the certificate is not valid now")
        if self.tick:
            self.tick()
        if certs.signed_by(got, ca, self.tick) is False:
            return self.fail("the certificate is not signed by this node's CA")
        return {"cert": answer["cert"], "key": key}

    def trial_files(self, new):
        # The new identity written beside the one in use (not yet used): its files, or
        # None when the flash would not take them (full).
        n = (self.own or {}).get("n", 0) + 1
        files = {"n": n, "ca": self.ca, "cert": self._path("id-" + str(n) + ".pem"),
                 "key": self._path("id-" + str(n) + ".key")}
        try:
            fsio.write_file(files["key"], new["key"].encode(), self.dir)
            fsio.write_file(files["cert"], new["cert"].encode(), self.dir)
        except OSError as e:
            fsio.remove(files["key"])
            return self.fail("the new certificate could not be written: " + str(e))
        return files

    def take(self, files):
        # The trial connection with ``files`` worked: they become the identity (one
        # rename), then the old renewed files and the new key go.
        old = self.own
        own = {"n": files["n"], "cert": files["cert"], "key": files["key"]}
        fsio.write_file(self._path(IDENTITY), json.dumps(own).encode(), self.dir)
        self.own, self._cert = own, None
        if old:
            fsio.remove(old["cert"])
            fsio.remove(old["key"])
        fsio.remove(self._path(NEW_KEY))
        self.asked, self.failed, self.changed = None, None, True
        self._save()
        self.log("new certificate in use, valid to", iso_utc(self.expires())[:10])

    def drop_trial(self, files, why):
        fsio.remove(files["cert"])
        fsio.remove(files["key"])
        self.fail("the broker did not accept the new certificate: " + why)

    def fail(self, why):
        self.failed = why[:messages.REASON_MAX]
        self.changed = True
        self._save()
        self.log("certificate not renewed:", why, "(the old one stays in use)")
        return None
