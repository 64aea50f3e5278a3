"""Our tasks written out for other harnesses (cogdistill-export), so any model they run can be read back."""
