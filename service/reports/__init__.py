"""Official documents (Decree 30 layout), the monthly report and its reminders."""
