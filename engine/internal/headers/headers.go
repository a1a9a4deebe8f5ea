// Package headers knows which header names say they hold a credential, for
// every place that shows headers: rejections, quarantined requests, the
// admin API's view of the configuration, and what a destination answers.
//
// It may import the standard library only.
package headers

import "strings"

// secretWords mark headers whose values are credentials or signatures.
var secretWords = []string{"auth", "token", "key", "secret", "signature", "cookie", "password"}

// Secret reports whether a header's name says it holds a credential.
func Secret(name string) bool {
	name = strings.ToLower(name)
	for _, w := range secretWords {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}
