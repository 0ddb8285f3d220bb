"""The package version, in a module of its own so the core can name it without importing the
package's front doors."""

__version__ = "0.1.0"
