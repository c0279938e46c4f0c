// Package rugwatch holds the domain types shared by every part of rugwatch:
// digests, tool states, severities, events, field-level changes and
// findings. It has no behaviour beyond small helpers on those types and
// imports only the standard library, so that monitor, store, signatures and
// notify can all speak the same words without importing each other.
package rugwatch
