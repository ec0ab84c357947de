// Command rpex is a govmomi 0.24.2 client tool used as an interop and performance peer for the
// Rust SDK. It talks to a vCenter (in practice the vcsim peer in ../vcsim) over SOAP.
//
// Subcommands:
//
//	rpex dump -url U -props a,b,c|all -out FILE
//	    ContainerView over all VirtualMachines under the root folder, then one
//	    RetrievePropertiesEx of the given properties ("all" = PropertySpec.all) for all of
//	    them. Writes the raw SOAP response envelope bytes, exactly as received, to FILE.
//	rpex decode [-repeat N] FILE...
//	    Decodes each saved envelope N times with govmomi's own decoder (vim25/xml with
//	    types.TypeFunc, the path soap.Client.RoundTrip uses) and prints bytes, best time,
//	    MB/s and object count per file. With -describe it prints instead what was decoded (per
//	    object and property: the Go/vim type govmomi chose and scalar values), an oracle for
//	    decoder tests.
//	rpex list -url U [-n-props 5] [-repeat N]
//	    Lists all VMs with n properties through ContainerView.Retrieve into []mo.VirtualMachine
//	    (the idiomatic govmomi listing) and prints wall time and client CPU time (getrusage
//	    user+sys of this process only) in total and per object.
//	rpex bench-rpex -url U [-repeat N] [-modes raw,decode]
//	    RetrievePropertiesEx of name, runtime.powerState, config.hardware.device and summary
//	    over all VMs through a ContainerView, N times; prints objects/s and MB/s of the best run,
//	    once reading the response raw (server encode + HTTP) and once decoding it with govmomi.
//
// Every subcommand prints one human-readable line per result and, with -json, a JSON object
// per result instead, so that scripts and tests can read the figures.
//
// Build (GOPATH mode, see peers/build.sh):
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o rpex ./peers/govmomi/rpex
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"log"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vim25/xml"
)

const usage = `usage:
  rpex dump -url U -props a,b,c|all -out FILE
  rpex decode [-repeat N] [-json] [-describe] FILE...
  rpex list -url U [-n-props 5] [-repeat N] [-json]
  rpex bench-rpex -url U [-repeat N] [-modes raw,decode] [-json]`

// listProps are the properties `list` reads, in order; -n-props takes a prefix.
var listProps = []string{
	"name",
	"runtime.powerState",
	"config.hardware.numCPU",
	"config.hardware.memoryMB",
	"summary.config.guestFullName",
	"config.guestId",
	"runtime.host",
	"config.uuid",
}

// benchProps is the 4-property request of `bench-rpex` (issue 5's anchor).
var benchProps = []string{"name", "runtime.powerState", "config.hardware.device", "summary"}

func main() {
	log.SetFlags(0)
	log.SetPrefix("rpex: ")
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "dump":
		err = cmdDump(args)
	case "decode":
		err = cmdDecode(args)
	case "list":
		err = cmdList(args)
	case "bench-rpex":
		err = cmdBenchRpex(args)
	case "-h", "-help", "--help", "help":
		fmt.Println(usage)
		return
	default:
		err = fmt.Errorf("unknown subcommand %q\n%s", cmd, usage)
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		log.Print(err)
		os.Exit(1)
	}
}

// ---------------------------------------------------------------------------------------------
// Connection and capture
// ---------------------------------------------------------------------------------------------

// recorder wraps the SOAP client's HTTP transport: it counts response body bytes and, when
// keep is set, keeps the last response body exactly as received.
type recorder struct {
	inner http.RoundTripper

	mu    sync.Mutex
	keep  bool
	last  []byte
	bytes int64
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := r.inner.RoundTrip(req)
	if err != nil {
		return res, err
	}
	r.mu.Lock()
	keep := r.keep
	r.mu.Unlock()
	if keep {
		b, err := ioutil.ReadAll(res.Body)
		_ = res.Body.Close()
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		r.last = b
		r.bytes += int64(len(b))
		r.mu.Unlock()
		res.Body = ioutil.NopCloser(bytes.NewReader(b))
		return res, nil
	}
	res.Body = &countingBody{ReadCloser: res.Body, r: r}
	return res, nil
}

func (r *recorder) take() (last []byte, n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	last, n = r.last, r.bytes
	r.last, r.bytes = nil, 0
	return last, n
}

type countingBody struct {
	io.ReadCloser
	r *recorder
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.r.mu.Lock()
	b.r.bytes += int64(n)
	b.r.mu.Unlock()
	return n, err
}

// connect logs in to the SDK URL (credentials in its userinfo; TLS certificates are not
// verified, as vcsim's are self-signed) and installs a recorder on the HTTP transport.
func connect(ctx context.Context, raw string) (*govmomi.Client, *recorder, error) {
	if raw == "" {
		return nil, nil, errors.New("-url is required (the vcsim peer prints it as its first stdout line)")
	}
	u, err := soap.ParseURL(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("-url: %v", err)
	}
	if u.User == nil {
		return nil, nil, errors.New("-url must carry credentials, e.g. http://user:pass@127.0.0.1:PORT/sdk")
	}
	c, err := govmomi.NewClient(ctx, u, true)
	if err != nil {
		return nil, nil, fmt.Errorf("login to %s: %v", redact(u), err)
	}
	rec := &recorder{inner: c.Client.Client.Client.Transport}
	c.Client.Client.Client.Transport = rec
	return c, rec, nil
}

func redact(u *url.URL) string {
	v := *u
	v.User = nil
	return v.String()
}

// vmContainerView creates a recursive ContainerView of all VirtualMachines under the root folder.
func vmContainerView(ctx context.Context, c *govmomi.Client) (*view.ContainerView, error) {
	m := view.NewManager(c.Client)
	v, err := m.CreateContainerView(ctx, c.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		return nil, fmt.Errorf("CreateContainerView: %v", err)
	}
	return v, nil
}

// rpexRequest builds RetrievePropertiesEx of props (nil = all) over the view's VMs.
func rpexRequest(c *govmomi.Client, v *view.ContainerView, props []string) *types.RetrievePropertiesEx {
	pspec := types.PropertySpec{Type: "VirtualMachine"}
	if props == nil {
		pspec.All = types.NewBool(true)
	} else {
		pspec.PathSet = props
	}
	return &types.RetrievePropertiesEx{
		This: c.ServiceContent.PropertyCollector,
		SpecSet: []types.PropertyFilterSpec{{
			ObjectSet: []types.ObjectSpec{{
				Obj:       v.Reference(),
				Skip:      types.NewBool(true),
				SelectSet: []types.BaseSelectionSpec{&types.TraversalSpec{Type: "ContainerView", Path: "view"}},
			}},
			PropSet: []types.PropertySpec{pspec},
		}},
		Options: types.RetrieveOptions{},
	}
}

// retrieveAll runs the request and follows ContinueRetrievePropertiesEx tokens; it returns the
// number of objects and pages.
func retrieveAll(ctx context.Context, c *govmomi.Client, req *types.RetrievePropertiesEx) (objects, pages int, err error) {
	res, err := methods.RetrievePropertiesEx(ctx, c.Client, req)
	if err != nil {
		return 0, 0, fmt.Errorf("RetrievePropertiesEx: %v", err)
	}
	if res.Returnval == nil {
		return 0, 1, nil
	}
	objects, pages = len(res.Returnval.Objects), 1
	token := res.Returnval.Token
	for token != "" {
		cres, err := methods.ContinueRetrievePropertiesEx(ctx, c.Client, &types.ContinueRetrievePropertiesEx{
			This: req.This, Token: token,
		})
		if err != nil {
			return objects, pages, fmt.Errorf("ContinueRetrievePropertiesEx: %v", err)
		}
		objects += len(cres.Returnval.Objects)
		pages++
		token = cres.Returnval.Token
	}
	return objects, pages, nil
}

// retrieveRaw posts the same RetrievePropertiesEx request through the logged-in HTTP client (its
// cookie jar carries the session) and reads the response without decoding it, so that the time
// is the server's (encode + HTTP) rather than the client decoder's. It returns the body size and
// the number of <objects> elements; a paged or fault response is an error.
func retrieveRaw(ctx context.Context, c *govmomi.Client, req *types.RetrievePropertiesEx) (size int64, objects int, err error) {
	b, err := xml.Marshal(soap.Envelope{Body: &methods.RetrievePropertiesExBody{Req: req}})
	if err != nil {
		return 0, 0, err
	}
	hreq, err := http.NewRequest("POST", c.Client.URL().String(), io.MultiReader(strings.NewReader(xml.Header), bytes.NewReader(b)))
	if err != nil {
		return 0, 0, err
	}
	hreq.Header.Set("Content-Type", `text/xml; charset="utf-8"`)
	hreq.Header.Set("SOAPAction", c.Client.Namespace+"/"+c.Client.Version)
	res, err := c.Client.Client.Client.Do(hreq.WithContext(ctx))
	if err != nil {
		return 0, 0, err
	}
	defer res.Body.Close()
	body, err := ioutil.ReadAll(res.Body)
	if err != nil {
		return 0, 0, err
	}
	if res.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("RetrievePropertiesEx (raw): HTTP %s: %.200s", res.Status, body)
	}
	if bytes.Contains(body, []byte("<token>")) {
		return 0, 0, errors.New("RetrievePropertiesEx (raw): the server paged the result; raw mode reads single pages only")
	}
	return int64(len(body)), bytes.Count(body, []byte("<objects>")), nil
}

func parseProps(s string) ([]string, error) {
	if s == "all" {
		return nil, nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, fmt.Errorf("-props %q: empty property path", s)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, errors.New("-props is required: a comma-separated list of property paths, or all")
	}
	return out, nil
}

// ---------------------------------------------------------------------------------------------
// dump
// ---------------------------------------------------------------------------------------------

func cmdDump(args []string) error {
	fs := flag.NewFlagSet("dump", flag.ContinueOnError)
	rawURL := fs.String("url", "", "SDK URL with credentials")
	propsFlag := fs.String("props", "", "comma-separated property paths, or all")
	out := fs.String("out", "", "file to write the raw response envelope to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *propsFlag == "" || *out == "" {
		return errors.New("dump needs -props and -out")
	}
	props, err := parseProps(*propsFlag)
	if err != nil {
		return err
	}
	ctx := context.Background()
	c, rec, err := connect(ctx, *rawURL)
	if err != nil {
		return err
	}
	defer func() { _ = c.Logout(ctx) }()
	v, err := vmContainerView(ctx, c)
	if err != nil {
		return err
	}
	defer func() { _ = v.Destroy(ctx) }()

	rec.mu.Lock()
	rec.keep = true
	rec.mu.Unlock()
	res, err := methods.RetrievePropertiesEx(ctx, c.Client, rpexRequest(c, v, props))
	rec.mu.Lock()
	rec.keep = false
	rec.mu.Unlock()
	if err != nil {
		return fmt.Errorf("RetrievePropertiesEx: %v", err)
	}
	body, _ := rec.take()
	n := 0
	if res.Returnval != nil {
		n = len(res.Returnval.Objects)
		if res.Returnval.Token != "" {
			return fmt.Errorf("the server paged the result (%d objects in the first page); dump writes single-page envelopes only", n)
		}
	}
	if err := ioutil.WriteFile(*out, body, 0o644); err != nil {
		return err
	}
	fmt.Printf("%s: %d bytes, %d objects\n", *out, len(body), n)
	return nil
}

// ---------------------------------------------------------------------------------------------
// decode
// ---------------------------------------------------------------------------------------------

type decodeResult struct {
	File    string  `json:"file"`
	Bytes   int     `json:"bytes"`
	Objects int     `json:"objects"`
	BestS   float64 `json:"best_s"`
	MBps    float64 `json:"mb_per_s"`
	Repeat  int     `json:"repeat"`
	Decoder string  `json:"decoder"`
}

// decodeEnvelope decodes one RetrieveProperties(Ex) response envelope the way
// soap.Client.RoundTrip does and returns its ObjectContents (of the first page).
func decodeEnvelope(b []byte, ex bool) ([]types.ObjectContent, error) {
	dec := xml.NewDecoder(bytes.NewReader(b))
	dec.TypeFunc = types.TypeFunc()
	if ex {
		var body methods.RetrievePropertiesExBody
		if err := dec.Decode(&soap.Envelope{Body: &body}); err != nil {
			return nil, err
		}
		if f := body.Fault(); f != nil {
			return nil, soap.WrapSoapFault(f)
		}
		if body.Res == nil || body.Res.Returnval == nil {
			return nil, nil
		}
		return body.Res.Returnval.Objects, nil
	}
	var body methods.RetrievePropertiesBody
	if err := dec.Decode(&soap.Envelope{Body: &body}); err != nil {
		return nil, err
	}
	if f := body.Fault(); f != nil {
		return nil, soap.WrapSoapFault(f)
	}
	if body.Res == nil {
		return nil, nil
	}
	return body.Res.Returnval, nil
}

// propDescription is what `decode -describe` reports for one decoded property: the Go type
// govmomi chose for the `val` (its vim type name for data objects and enums), the scalar value
// for primitives, enums and MoRefs, and for ArrayOfX the element count and element types.
type propDescription struct {
	Name      string      `json:"name"`
	GoType    string      `json:"go_type"`
	Value     interface{} `json:"value,omitempty"`
	Len       *int        `json:"len,omitempty"`
	ItemTypes []string    `json:"item_types,omitempty"`
}

type objectDescription struct {
	Obj     types.ManagedObjectReference `json:"obj"`
	Props   []propDescription            `json:"props"`
	Missing []string                     `json:"missing,omitempty"`
}

func typeName(t reflect.Type) string {
	return strings.TrimPrefix(t.String(), "types.")
}

func describeValue(name string, val interface{}) propDescription {
	d := propDescription{Name: name}
	if val == nil {
		d.GoType = "nil"
		return d
	}
	v := reflect.ValueOf(val)
	d.GoType = typeName(v.Type())
	switch x := val.(type) {
	case types.ManagedObjectReference:
		d.Value = x
		return d
	case time.Time:
		d.Value = x.UTC().Format(time.RFC3339Nano)
		return d
	}
	switch v.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint8, reflect.Float32, reflect.Float64:
		d.Value = val
	case reflect.Struct:
		if strings.HasPrefix(v.Type().Name(), "ArrayOf") && v.NumField() == 1 && v.Field(0).Kind() == reflect.Slice {
			items := v.Field(0)
			n := items.Len()
			d.Len = &n
			seen := map[string]bool{}
			for i := 0; i < n; i++ {
				it := items.Index(i)
				if it.Kind() == reflect.Interface && !it.IsNil() {
					it = it.Elem()
				}
				tn := typeName(it.Type())
				if !seen[tn] {
					seen[tn] = true
					d.ItemTypes = append(d.ItemTypes, tn)
				}
			}
			et := items.Type().Elem()
			scalar := et.Kind() != reflect.Interface && et.Kind() != reflect.Struct && et.Kind() != reflect.Ptr
			if n > 0 && (scalar || et == reflect.TypeOf(types.ManagedObjectReference{})) {
				d.Value = items.Interface()
			}
		}
	}
	return d
}

func describe(objs []types.ObjectContent) []objectDescription {
	out := make([]objectDescription, 0, len(objs))
	for _, oc := range objs {
		od := objectDescription{Obj: oc.Obj}
		for _, p := range oc.PropSet {
			od.Props = append(od.Props, describeValue(p.Name, p.Val))
		}
		for _, m := range oc.MissingSet {
			od.Missing = append(od.Missing, m.Path)
		}
		out = append(out, od)
	}
	return out
}

func cmdDecode(args []string) error {
	fs := flag.NewFlagSet("decode", flag.ContinueOnError)
	repeat := fs.Int("repeat", 5, "decode each file this many times; the best time counts")
	asJSON := fs.Bool("json", false, "print one JSON object per file")
	describeFlag := fs.Bool("describe", false, "instead of timing, print (indented JSON) what govmomi decoded: per object, each property's Go/vim type and scalar value")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("decode needs at least one FILE")
	}
	if *repeat < 1 {
		return fmt.Errorf("-repeat must be at least 1 (got %d)", *repeat)
	}
	for _, file := range fs.Args() {
		b, err := ioutil.ReadFile(file)
		if err != nil {
			return err
		}
		ex := bytes.Contains(b, []byte("RetrievePropertiesExResponse"))
		if !ex && !bytes.Contains(b, []byte("RetrievePropertiesResponse")) {
			return fmt.Errorf("%s: not a RetrieveProperties(Ex) response envelope", file)
		}
		if *describeFlag {
			objs, err := decodeEnvelope(b, ex)
			if err != nil {
				return fmt.Errorf("%s: %v", file, err)
			}
			out, err := json.MarshalIndent(map[string]interface{}{
				"decoder": "govmomi 0.24.2 vim25/xml + types.TypeFunc",
				"objects": describe(objs),
			}, "", "  ")
			if err != nil {
				return err
			}
			fmt.Println(string(out))
			continue
		}
		best := time.Duration(1<<63 - 1)
		objects := 0
		for i := 0; i < *repeat; i++ {
			start := time.Now()
			objs, err := decodeEnvelope(b, ex)
			d := time.Since(start)
			if err != nil {
				return fmt.Errorf("%s: %v", file, err)
			}
			objects = len(objs)
			if d < best {
				best = d
			}
		}
		r := decodeResult{
			File: file, Bytes: len(b), Objects: objects, BestS: best.Seconds(),
			MBps: float64(len(b)) / 1e6 / best.Seconds(), Repeat: *repeat,
			Decoder: "govmomi 0.24.2 vim25/xml + types.TypeFunc",
		}
		if *asJSON {
			printJSON(r)
		} else {
			fmt.Printf("%s: %d bytes, %d objects, best of %d %.4f s, %.1f MB/s\n",
				file, r.Bytes, r.Objects, r.Repeat, r.BestS, r.MBps)
		}
	}
	return nil
}

// ---------------------------------------------------------------------------------------------
// list
// ---------------------------------------------------------------------------------------------

// cpuTime is this process's user+sys CPU time (getrusage RUSAGE_SELF). The simulator is a
// separate process, so its CPU is not in it.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type listResult struct {
	Objects        int      `json:"objects"`
	Props          []string `json:"props"`
	Repeat         int      `json:"repeat"`
	BestWallS      float64  `json:"best_wall_s"`
	MedianWallS    float64  `json:"median_wall_s"`
	BestCPUS       float64  `json:"best_client_cpu_s"`
	WallPerObjUs   float64  `json:"wall_per_object_us"`
	CPUPerObjUs    float64  `json:"client_cpu_per_object_us"`
	ResponseBytes  int64    `json:"response_bytes"`
	NameOfFirstObj string   `json:"first_name"`
}

func cmdList(args []string) error {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	rawURL := fs.String("url", "", "SDK URL with credentials")
	nProps := fs.Int("n-props", 5, fmt.Sprintf("number of properties to read (1..%d): %s", len(listProps), strings.Join(listProps, ",")))
	repeat := fs.Int("repeat", 3, "list this many times; best and median are reported")
	asJSON := fs.Bool("json", false, "print a JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *nProps < 1 || *nProps > len(listProps) {
		return fmt.Errorf("-n-props must be in 1..%d (got %d)", len(listProps), *nProps)
	}
	if *repeat < 1 {
		return fmt.Errorf("-repeat must be at least 1 (got %d)", *repeat)
	}
	props := listProps[:*nProps]
	ctx := context.Background()
	c, rec, err := connect(ctx, *rawURL)
	if err != nil {
		return err
	}
	defer func() { _ = c.Logout(ctx) }()

	var walls []time.Duration
	bestCPU := time.Duration(1<<63 - 1)
	var r listResult
	for i := 0; i < *repeat; i++ {
		_, _ = rec.take()
		w0, c0 := time.Now(), cpuTime()
		v, err := vmContainerView(ctx, c)
		if err != nil {
			return err
		}
		var vms []mo.VirtualMachine
		if err := v.Retrieve(ctx, []string{"VirtualMachine"}, props, &vms); err != nil {
			return fmt.Errorf("ContainerView.Retrieve: %v", err)
		}
		if err := v.Destroy(ctx); err != nil {
			return fmt.Errorf("DestroyView: %v", err)
		}
		wall, cpu := time.Since(w0), cpuTime()-c0
		_, n := rec.take()
		walls = append(walls, wall)
		if cpu < bestCPU {
			bestCPU = cpu
		}
		r.Objects, r.ResponseBytes = len(vms), n
		if len(vms) > 0 {
			r.NameOfFirstObj = vms[0].Name
		}
	}
	if r.Objects == 0 {
		return errors.New("the inventory has no VMs")
	}
	sort.Slice(walls, func(i, j int) bool { return walls[i] < walls[j] })
	r.Props, r.Repeat = props, *repeat
	r.BestWallS, r.MedianWallS, r.BestCPUS = walls[0].Seconds(), walls[len(walls)/2].Seconds(), bestCPU.Seconds()
	r.WallPerObjUs = r.BestWallS * 1e6 / float64(r.Objects)
	r.CPUPerObjUs = r.BestCPUS * 1e6 / float64(r.Objects)
	if *asJSON {
		printJSON(r)
	} else {
		fmt.Printf("list %d VMs x %d props (%s): best of %d wall %.3f s (median %.3f s), client CPU %.3f s; per object: wall %.1f us, client CPU %.1f us; response %d bytes\n",
			r.Objects, len(props), strings.Join(props, ","), r.Repeat, r.BestWallS, r.MedianWallS, r.BestCPUS,
			r.WallPerObjUs, r.CPUPerObjUs, r.ResponseBytes)
	}
	return nil
}

// ---------------------------------------------------------------------------------------------
// bench-rpex
// ---------------------------------------------------------------------------------------------

type benchResult struct {
	Mode      string   `json:"mode"`
	Objects   int      `json:"objects"`
	Pages     int      `json:"pages"`
	Props     []string `json:"props"`
	Repeat    int      `json:"repeat"`
	BestS     float64  `json:"best_s"`
	MedianS   float64  `json:"median_s"`
	Bytes     int64    `json:"response_bytes"`
	ObjPerSec float64  `json:"objects_per_s"`
	MBps      float64  `json:"mb_per_s"`
}

// benchModes: "decode" is the govmomi client end to end (request, server, HTTP, govmomi decode
// into types.RetrieveResult); "raw" reads the same response without decoding it (server encode
// plus HTTP, the simulator's throughput as a fast client would see it).
var benchModes = map[string]bool{"decode": true, "raw": true}

func cmdBenchRpex(args []string) error {
	fs := flag.NewFlagSet("bench-rpex", flag.ContinueOnError)
	rawURL := fs.String("url", "", "SDK URL with credentials")
	repeat := fs.Int("repeat", 3, "run the request this many times per mode; best and median are reported")
	modes := fs.String("modes", "raw,decode", "comma-separated: raw (server + HTTP only), decode (plus govmomi decoding)")
	asJSON := fs.Bool("json", false, "print one JSON object per mode")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *repeat < 1 {
		return fmt.Errorf("-repeat must be at least 1 (got %d)", *repeat)
	}
	var modeList []string
	for _, m := range strings.Split(*modes, ",") {
		if !benchModes[m] {
			return fmt.Errorf("-modes: unknown mode %q (want raw, decode)", m)
		}
		modeList = append(modeList, m)
	}
	ctx := context.Background()
	c, rec, err := connect(ctx, *rawURL)
	if err != nil {
		return err
	}
	defer func() { _ = c.Logout(ctx) }()
	v, err := vmContainerView(ctx, c)
	if err != nil {
		return err
	}
	defer func() { _ = v.Destroy(ctx) }()
	req := rpexRequest(c, v, benchProps)

	for _, mode := range modeList {
		var times []time.Duration
		r := benchResult{Mode: mode, Props: benchProps, Repeat: *repeat}
		for i := 0; i < *repeat; i++ {
			_, _ = rec.take()
			start := time.Now()
			var n, pages int
			if mode == "raw" {
				_, n, err = retrieveRaw(ctx, c, req)
				pages = 1
			} else {
				n, pages, err = retrieveAll(ctx, c, req)
			}
			d := time.Since(start)
			if err != nil {
				return err
			}
			_, b := rec.take()
			times = append(times, d)
			r.Objects, r.Pages, r.Bytes = n, pages, b
		}
		if r.Objects == 0 {
			return errors.New("the inventory has no VMs")
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		r.BestS, r.MedianS = times[0].Seconds(), times[len(times)/2].Seconds()
		r.ObjPerSec = float64(r.Objects) / r.BestS
		r.MBps = float64(r.Bytes) / 1e6 / r.BestS
		if *asJSON {
			printJSON(r)
		} else {
			fmt.Printf("[%s] RetrievePropertiesEx %d VMs x {%s} (%d page(s), %d bytes): best of %d %.3f s (median %.3f s), %.0f objects/s, %.1f MB/s\n",
				r.Mode, r.Objects, strings.Join(benchProps, ","), r.Pages, r.Bytes, r.Repeat, r.BestS, r.MedianS, r.ObjPerSec, r.MBps)
		}
	}
	return nil
}

func printJSON(v interface{}) {
	b, err := json.Marshal(v)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(b))
}
