"""What the IdP and the gateway both need; imports no Flask application code."""
