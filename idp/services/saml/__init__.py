"""SAML 2.0 single sign-on, Bascule as the Service Provider (python3-saml underneath).

connections: who may manage an organisation's IdP connection, and what it holds;
metadata: reading the IdP's metadata; sp: python3-saml's settings and our SP metadata;
login: AuthnRequest out, Response in, validated; provisioning: the account and role it gives;
logout: single logout both ways; enforcement: when a password is not enough.
"""
