"""Probe backends: live EventSources fed by kernel programs (core: CO-RE, bcc: kprobes)."""
