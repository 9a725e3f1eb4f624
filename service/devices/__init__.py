"""The commune's register of official removable devices (USB sticks) and how events use it."""
