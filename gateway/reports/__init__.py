"""Reports the departments are assessed on: usage and utilisation, incident handling, quality."""
