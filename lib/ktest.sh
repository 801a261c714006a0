# ktest shell library (placeholder until the library lands)
