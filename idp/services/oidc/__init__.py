"""The OpenID Connect provider: clients, keys, tokens, consent and logout."""
