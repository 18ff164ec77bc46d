"""The DynDNS2 / No-IP `/nic/update` endpoint: protocol, credentials, service and DNS backends."""
