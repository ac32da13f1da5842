package testkit

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

// Filler fills a value with random contents by reflection, every field of every struct, so that
// a field added to a state later gets a value too and a codec that forgets it fails its round
// trip. It refuses kinds it does not know, so a test is taught about them instead of skipping
// them. Empty slices and strings stay nil and empty, as the state codecs decode them.
type Filler struct {
	TB testing.TB
	R  *rand.Rand
	// Full sets every pointer and bool, makes every list and byte string non-empty and every
	// integer non-zero: a field a codec drops cannot then come back equal by luck.
	Full bool
	// Custom, if set, fills v itself and reports true for the types that have rules of their own
	// (a level 0 to 2, a non-negative duration, a part another layer encodes); false leaves v to
	// the Filler.
	Custom func(f *Filler, v reflect.Value) bool
}

// Fill fills v, which must be settable; path names it in a refusal.
func (f *Filler) Fill(v reflect.Value, path string) {
	if f.Custom != nil && f.Custom(f, v) {
		return
	}
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(f.Full || f.R.IntN(2) == 0)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(f.Uint() & (math.MaxUint64 >> (64 - 8*v.Type().Size())))
		if v.Uint() == 0 && f.Full {
			v.SetUint(1)
		}
	case reflect.Int:
		v.SetInt(f.R.Int64N(math.MaxInt32 >> f.R.IntN(31))) // fits a 32-bit int
		if v.Int() == 0 && f.Full {
			v.SetInt(1)
		}
	case reflect.String:
		v.SetString(string(f.Bytes()))
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			v.SetBytes(f.Bytes())
			return
		}
		n := f.R.IntN(4)
		if f.Full {
			n++
		}
		if n == 0 {
			v.SetZero()
			return
		}
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			f.Fill(s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Array:
		for i := range v.Len() {
			f.Fill(v.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Pointer:
		if !f.Full && f.R.IntN(4) == 0 {
			v.SetZero()
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		f.Fill(v.Elem(), path)
	case reflect.Struct:
		for i := range v.NumField() {
			name := path + "." + v.Type().Field(i).Name
			if !v.Field(i).CanSet() {
				f.TB.Fatalf("filler: %s is unexported: teach the filler", name)
			}
			f.Fill(v.Field(i), name)
		}
	default:
		f.TB.Fatalf("filler: %s is a %v: teach the filler (and check that the codec encodes it)", path, v.Kind())
	}
}

// Bytes are any bytes (UTF-8 or not), sometimes over 127 so that their length takes two
// varint bytes; never empty when Full. An empty result is nil.
func (f *Filler) Bytes() []byte {
	n := f.R.IntN(12)
	if f.R.IntN(4) == 0 {
		n = 128 + f.R.IntN(200)
	}
	if f.Full {
		n++
	}
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(f.R.Uint32())
	}
	return b
}

// Uint spans every uvarint length, the largest value included; it is zero only when not Full.
func (f *Filler) Uint() uint64 {
	if f.R.IntN(16) == 0 {
		return math.MaxUint64
	}
	v := f.R.Uint64() >> f.R.IntN(64)
	if v == 0 && (f.Full || f.R.IntN(2) == 0) {
		v = 1
	}
	return v
}
