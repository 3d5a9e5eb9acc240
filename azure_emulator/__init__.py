"""A stand-in for Azure (ARM, Entra ID) and sandbox AKS clusters, served over HTTPS.

Run it as a separate process: ``python -m azure_emulator --port 0 --state-dir DIR``.
It implements the REST surface and the error bodies recorded in AZURE-FACTS.md so that the real
SDK clients (azure-identity, azure-mgmt-*, kubernetes) can be pointed at it unchanged.

This package deliberately imports nothing from the portal (no Django, no other ``provisioning``
modules): it must behave like an external service the portal reaches over the network.
"""
