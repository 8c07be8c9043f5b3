"""Request and response shapes of every API flavour aiquery speaks (client and emulator)."""
