// Package demo is a small API that end-to-end tests and the docker-compose stack put behind
// the proxy: a login that returns a token, a JWT and a PHP-style session cookie, endpoints
// protected by each of them, and a payment endpoint. It keeps its state in memory.
package demo

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Password is the password every demo user logs in with.
const Password = "demo"

// maxBody bounds request bodies the demo reads.
const maxBody = 1 << 20

// Options configures the API.
type Options struct {
	// Secret signs the JWTs (HS256); empty means a random one.
	Secret []byte
	// Observe, when set, sees every request before it is handled (tests check what reached
	// the upstream). It must not read the body.
	Observe func(r *http.Request)
}

// API is the demo API; it implements http.Handler.
type API struct {
	o        Options
	mux      *http.ServeMux
	mu       sync.Mutex
	tokens   map[string]string // login token -> user
	sessions map[string]string // PHPSESSID -> user
	nextID   atomic.Int64
}

// New returns the API.
func New(o Options) *API {
	if len(o.Secret) == 0 {
		o.Secret = []byte(randomHex(32))
	}
	a := &API{o: o, mux: http.NewServeMux(), tokens: map[string]string{}, sessions: map[string]string{}}
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]any{"ok": true}) })
	a.mux.HandleFunc("POST /login", a.login)
	a.mux.HandleFunc("GET /api/items", a.items)
	a.mux.HandleFunc("POST /api/cart", a.cart)
	a.mux.HandleFunc("GET /api/orders", a.orders)
	a.mux.HandleFunc("GET /api/orders/{id}", a.orders)
	a.mux.HandleFunc("POST /api/payments", a.payments)
	a.mux.HandleFunc("GET /account", a.account)
	a.mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			writeJSON(w, 200, map[string]any{"service": "demo"})
			return
		}
		writeJSON(w, 404, map[string]any{"error": "not found"})
	})
	return a
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.o.Observe != nil {
		a.o.Observe(r)
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	a.mux.ServeHTTP(w, r)
}

// credentials are read from a JSON or urlencoded body.
type credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func (a *API) login(w http.ResponseWriter, r *http.Request) {
	var c credentials
	if strings.HasPrefix(r.Header.Get("content-type"), "application/x-www-form-urlencoded") {
		c.Username, c.Password = r.PostFormValue("username"), r.PostFormValue("password")
	} else if err := json.NewDecoder(r.Body).Decode(&c); err != nil {
		writeJSON(w, 400, map[string]any{"error": "send JSON {\"username\", \"password\"}"})
		return
	}
	if c.Username == "" || c.Password != Password {
		writeJSON(w, 401, map[string]any{"error": "wrong username or password"})
		return
	}
	token, sid := randomHex(16), randomHex(16)
	a.mu.Lock()
	a.tokens[token] = c.Username
	a.sessions[sid] = c.Username
	a.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "PHPSESSID", Value: sid, Path: "/", HttpOnly: true})
	writeJSON(w, 200, map[string]any{
		"token":        token,
		"access_token": a.JWT(map[string]any{"sub": "u-" + c.Username, "details": map[string]any{"username": c.Username}, "role": "customer"}),
		"user":         c.Username,
	})
}

func (a *API) tokenUser(token string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	u, ok := a.tokens[token]
	return u, ok
}

func (a *API) items(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.tokenUser(r.URL.Query().Get("token")); !ok {
		writeJSON(w, 401, map[string]any{"error": "token required"})
		return
	}
	writeJSON(w, 200, map[string]any{"items": []map[string]any{{"product_id": "p-1"}, {"product_id": "p-2"}}})
}

func (a *API) cart(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Token     string `json:"token"`
		ProductID string `json:"product_id"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeJSON(w, 400, map[string]any{"error": "send JSON {\"token\", \"product_id\"}"})
		return
	}
	if _, ok := a.tokenUser(in.Token); !ok {
		writeJSON(w, 401, map[string]any{"error": "token required"})
		return
	}
	writeJSON(w, 200, map[string]any{"product_id": in.ProductID, "cart_size": 1})
}

func (a *API) orders(w http.ResponseWriter, r *http.Request) {
	claims, ok := a.bearer(r)
	if !ok {
		writeJSON(w, 401, map[string]any{"error": "bearer JWT required"})
		return
	}
	if id := r.PathValue("id"); id != "" {
		writeJSON(w, 200, map[string]any{"order_id": id, "customer": claims["sub"]})
		return
	}
	writeJSON(w, 200, map[string]any{"orders": []string{"o-1", "o-2"}, "customer": claims["sub"]})
}

func (a *API) payments(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.bearer(r); !ok {
		writeJSON(w, 401, map[string]any{"error": "bearer JWT required"})
		return
	}
	var in struct {
		Amount float64 `json:"amount"`
		Card   string  `json:"card"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Amount <= 0 {
		writeJSON(w, 400, map[string]any{"error": "send JSON {\"amount\" > 0, \"card\"}"})
		return
	}
	writeJSON(w, 201, map[string]any{"payment_id": "pay-" + strconv.FormatInt(a.nextID.Add(1), 10), "status": "accepted"})
}

func (a *API) account(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie("PHPSESSID")
	if err != nil {
		writeJSON(w, 401, map[string]any{"error": "log in first"})
		return
	}
	a.mu.Lock()
	user, ok := a.sessions[c.Value]
	a.mu.Unlock()
	if !ok {
		writeJSON(w, 401, map[string]any{"error": "session expired"})
		return
	}
	writeJSON(w, 200, map[string]any{"user": user, "plan": "free"})
}

// JWT signs claims with HS256.
func (a *API) JWT(claims map[string]any) string {
	enc := base64.RawURLEncoding
	payload, _ := json.Marshal(claims)
	head := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
	mac := hmac.New(sha256.New, a.o.Secret)
	mac.Write([]byte(head))
	return head + "." + enc.EncodeToString(mac.Sum(nil))
}

// bearer verifies an HS256 bearer JWT and returns its claims.
func (a *API) bearer(r *http.Request) (map[string]any, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("authorization"), "Bearer ")
	if !ok || len(tok) > 8192 {
		return nil, false
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, false
	}
	mac := hmac.New(sha256.New, a.o.Secret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
		return nil, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, false
	}
	var claims map[string]any
	if json.Unmarshal(payload, &claims) != nil {
		return nil, false
	}
	return claims, true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("content-type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = io.ReadFull(rand.Reader, b)
	return hex.EncodeToString(b)
}
