"""Device drivers for the gateway's sensors and actuators.

Every driver takes an already-open bus (an ``smbus2.SMBus``-like object, a
``serial.Serial``-like object, or a GPIO pin number plus a gpiozero pin factory)
and never opens a device itself; see ``drivers.registry`` for the names.
"""
