VERSION = "0.1.0"
BUILD = "dev"  # make flash writes the git commit here (in the copy it compiles)


def full():
    """The firmware version with its build: 0.1.0+dev, 0.1.0+g1a2b3c4."""
    return VERSION + "+" + BUILD
