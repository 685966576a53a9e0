"""Bus-level emulators of every supported device.

Each fake holds the physical values it "measures" (``fake.set(temperature_celsius=21.5)``)
and answers on the bus exactly as the chip would: registers, commands, busy times,
CRCs, frames. Faults are switched on through ``fake.faults``.
"""
