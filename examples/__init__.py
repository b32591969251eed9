"""Applications that use Bascule from the outside: they import nothing of ``idp`` or ``gateway``."""
