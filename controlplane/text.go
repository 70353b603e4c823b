package controlplane

import (
	"reflect"
	"strings"
	"unicode/utf8"
)

// StorableText reports whether s is text every store keeps as sent: valid
// UTF-8 without NUL. PostgreSQL's text refuses NUL outright, and SQLite
// would keep bytes that no other reader of the row could take back, so the
// two stores would disagree; both refuse it here, before either sees it.
func StorableText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// checkText returns EINVALID naming, by its JSON name, every string field of
// the request struct req (string, named string or *string) that is not
// StorableText, and nil when there is none. Every service method that takes a
// request calls it first, so no entry point can bring such text to a store.
func checkText(req any) error {
	v := reflect.Indirect(reflect.ValueOf(req))
	if v.Kind() != reflect.Struct {
		return nil
	}
	var fields []FieldError
	t := v.Type()
	for i := range t.NumField() {
		f := v.Field(i)
		if f.Kind() == reflect.Pointer && !f.IsNil() {
			f = f.Elem()
		}
		if f.Kind() != reflect.String || StorableText(f.String()) {
			continue
		}
		fields = append(fields, FieldError{Field: jsonName(t.Field(i)), Message: "must be UTF-8 text without NUL characters"})
	}
	if len(fields) > 0 {
		return Invalid(fields...)
	}
	return nil
}

// jsonName is the name a struct field has on the wire: its json tag, or its
// Go name in lower case for structs that are not sent as JSON.
func jsonName(f reflect.StructField) string {
	if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
		return name
	}
	return strings.ToLower(f.Name)
}
