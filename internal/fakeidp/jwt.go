package fakeidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// signer signs the server's tokens with ES256. Its key lives as long as the
// Server; the public half is served as a JWK set.
type signer struct {
	key *ecdsa.PrivateKey
	kid string
}

func newSigner() (*signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("fakeidp: generate signing key: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("fakeidp: encode signing key: %w", err)
	}
	sum := sha256.Sum256(der)
	return &signer{key: key, kid: base64.RawURLEncoding.EncodeToString(sum[:16])}, nil
}

// sign encodes claims as a JWT signed with ES256.
func (g *signer) sign(claims map[string]any) string {
	header, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": g.kid}) // strings never fail
	payload, _ := json.Marshal(claims)                                                       // strings and numbers never fail
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, g.key, sum[:])
	if err != nil { // only a failing random source; crypto/rand does not fail
		panic("fakeidp: ecdsa.Sign: " + err.Error())
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + enc.EncodeToString(sig)
}

// jwk is the public signing key as a JSON Web Key (RFC 7517).
func (g *signer) jwk() map[string]string {
	enc := base64.RawURLEncoding
	pub := g.key.PublicKey
	x := make([]byte, 32)
	y := make([]byte, 32)
	pub.X.FillBytes(x)
	pub.Y.FillBytes(y)
	return map[string]string{
		"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": g.kid,
		"x": enc.EncodeToString(x), "y": enc.EncodeToString(y),
	}
}

// jwtHeader is the part of a JOSE header this server looks at.
type jwtHeader struct {
	Alg     string `json:"alg"`
	Kid     string `json:"kid"`
	X5t     string `json:"x5t"`
	X5tS256 string `json:"x5t#S256"`
}

// maxJWT bounds the size of a JWT this server parses.
const maxJWT = 16 << 10

// parseJWT splits a compact JWS and decodes its header and claims. It checks
// nothing but the form.
func parseJWT(token string) (h jwtHeader, claims map[string]any, signed, sig []byte, err error) {
	if len(token) > maxJWT {
		return h, nil, nil, nil, errors.New("the JWT is too long")
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return h, nil, nil, nil, errors.New("not a JWT (want three dot-separated parts)")
	}
	enc := base64.RawURLEncoding
	rawHeader, err1 := enc.DecodeString(parts[0])
	rawClaims, err2 := enc.DecodeString(parts[1])
	sig, err3 := enc.DecodeString(parts[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return h, nil, nil, nil, errors.New("a JWT part is not base64url")
	}
	if json.Unmarshal(rawHeader, &h) != nil {
		return h, nil, nil, nil, errors.New("the JWT header is not a JSON object")
	}
	if json.Unmarshal(rawClaims, &claims) != nil || claims == nil {
		return h, nil, nil, nil, errors.New("the JWT claims are not a JSON object")
	}
	return h, claims, []byte(parts[0] + "." + parts[1]), sig, nil
}

// verifySignature checks a JWS signature with the public key of a
// certificate or of this server. It accepts RS256 and PS256 (RSA keys; MSAL
// Go signs client assertions with PS256, or RS256 for ADFS) and ES256 (P-256).
func verifySignature(alg string, pub crypto.PublicKey, signed, sig []byte) error {
	sum := sha256.Sum256(signed)
	switch k := pub.(type) {
	case *rsa.PublicKey:
		switch alg {
		case "RS256":
			return rsa.VerifyPKCS1v15(k, crypto.SHA256, sum[:], sig)
		case "PS256":
			return rsa.VerifyPSS(k, crypto.SHA256, sum[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
		}
	case *ecdsa.PublicKey:
		if alg == "ES256" && k.Curve == elliptic.P256() && len(sig) == 64 {
			r := new(big.Int).SetBytes(sig[:32])
			s := new(big.Int).SetBytes(sig[32:])
			if ecdsa.Verify(k, sum[:], r, s) {
				return nil
			}
			return errors.New("bad signature")
		}
	}
	return fmt.Errorf("algorithm %q does not fit the key", alg)
}

// thumbprintMatches reports whether a JWT header's certificate thumbprint, if
// it has one, names cert.
func thumbprintMatches(h jwtHeader, cert *x509.Certificate) bool {
	std := base64.StdEncoding
	url := base64.RawURLEncoding
	match := func(got string, sum []byte) bool {
		return got == std.EncodeToString(sum) || got == url.EncodeToString(sum)
	}
	switch {
	case h.X5tS256 != "":
		sum := sha256.Sum256(cert.Raw)
		return match(h.X5tS256, sum[:])
	case h.X5t != "":
		sum := sha1.Sum(cert.Raw) // #nosec: x5t is defined as SHA-1; it only selects a certificate
		return match(h.X5t, sum[:])
	}
	return true
}

// claimString returns a string claim, or "".
func claimString(claims map[string]any, name string) string {
	s, _ := claims[name].(string)
	return s
}

// claimTime returns a NumericDate claim in Unix seconds.
func claimTime(claims map[string]any, name string) (int64, bool) {
	f, ok := claims[name].(float64)
	return int64(f), ok
}
