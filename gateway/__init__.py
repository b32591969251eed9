"""The zero-trust gateway in front of the messaging app (imports only ``idp.common``)."""
