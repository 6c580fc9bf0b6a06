"""Optional compiled CPU kernels, built on first use with PyTorch's extension builder (a C++ compiler and
the `ninja` package, extra `bombus[kernels]`); bombus runs on PyTorch's own kernels wherever they are missing."""
