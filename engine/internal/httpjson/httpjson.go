// Package httpjson writes the JSON answers of the relay's two listeners, so
// that ingest and the admin API give an error the same shape:
// {"error": "reason"}.
//
// It may import the standard library only.
package httpjson

import (
	"encoding/json"
	"net/http"
)

// Write answers status with v as JSON.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Error answers status with {"error": reason}.
func Error(w http.ResponseWriter, status int, reason string) {
	Write(w, status, map[string]string{"error": reason})
}
