// Package fake holds the test doubles and fixtures shared by reconcile's
// packages' tests: a recording Engine, projects and observed worlds,
// clocks. It is imported only by _test.go files and must never be
// imported by production code.
package fake
