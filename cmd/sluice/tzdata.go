package main

// Freeze windows name IANA time zones. The container image ships no zone
// database (internal/image), so the binary carries Go's copy: it adds about
// 450 KB and makes every zone resolve the same way wherever sluice runs.
// e2e/image_test.go fails without this import.
import _ "time/tzdata"
