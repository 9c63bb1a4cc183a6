"""The internal CA: an offline-able root, an intermediate that issues, certificates, the CRL."""
