"""The domain of hosp-reliability; app.py only wires these modules to routes and events."""
