"""The request path, one module per stage, in the order of PRODUCT.md."""
