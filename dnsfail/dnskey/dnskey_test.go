package dnskey

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestOriginIsLowerCaseAndQualifiedOrRefused(t *testing.T) {
	for in, want := range map[string]string{
		"Example.TEST": "example.test.", "example.test.": "example.test.",
		"": "", ".": "", "a..b": "", strings.Repeat("a", 64) + ".test": "", strings.Repeat("a.", 127) + "b": "",
	} {
		got, err := Origin(in)
		if got != want || (err == nil) != (want != "") {
			t.Errorf("Origin(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// The key tag of RFC 4034's appendix B, on a key whose tag is published:
// the root zone's KSK-2017, 20326.
func TestKeyTagOfAPublishedKey(t *testing.T) {
	const root2017 = "AwEAAaz/tAm8yTn4Mfeh5eyI96WSVexTBAvkMgJzkKTOiW1vkIbzxeF3+/4RgWOq7HrxRixHlFlExOLAJr5emLvN7SWXgnLh4+B5xQlNVz8Og8kvArMtNROxVQuCaSnIDdD5LKyWbRd2n9WGe2R8PzgCmr3EgVLrjyBxWezF0jLHwVN8efS3rCj/EWgvIWgb9tarpVUDK/b58Da+sqqls3eNbuv7pr+eoZG+SrDK6nWeL3c6H5Apxz7LjVc1uTIdsIXxuOLYA4/ilBmSVIzuDWfdRUfhHdY6+cn8HFRm+2hM8AnXGXws9555KrUB5qihylGa8subX2Nn6UwNR1AkUTV74bU="
	b, err := base64.StdEncoding.DecodeString(root2017)
	if err != nil {
		t.Fatal(err)
	}
	if got := KeyTag(257, 3, 8, b); got != 20326 {
		t.Fatalf("key tag = %d, want 20326", got)
	}
}
