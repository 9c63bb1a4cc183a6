"""The internal container registry: who may pull and push where, and the tokens that say so."""
