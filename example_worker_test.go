package herald_test

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/step"
)

// Greet is a step.
func Greet(_ context.Context, name string) (string, error) { return "hello " + name, nil }

// WordCount is not a step: a step returns (T, error) or error.
func WordCount(s string) int { return len(s) }

// Hello greets whoever says hi.
var Hello = herald.NewFunction(herald.FunctionOpts{
	ID:       "hello",
	Triggers: []herald.Trigger{herald.OnEvent("chat/user.said-hi")},
}, func(ctx workflow.Context, in herald.Input[map[string]string]) (string, error) {
	return step.Run[string](ctx, "greet", Greet, in.Event.Data["name"])
})

// ExampleNewWorker creates a worker for the app "chat" and registers its
// functions and steps. NewWorker and the Register methods check what they
// can locally; Herald checks the rest of the configuration when the worker
// syncs (Worker.Run, Worker.Start or Worker.Sync), and lists every problem.
// A program then calls w.Run(ctx), which syncs with Herald and polls
// Temporal until ctx is done.
func ExampleNewWorker() {
	_, err := herald.NewWorker(herald.WorkerOptions{App: "chat"})
	fmt.Println(err)

	// client.Dial in a program; a lazy client connects on first use.
	temporalClient, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:7233"})
	if err != nil {
		panic(err)
	}
	defer temporalClient.Close()
	w, err := herald.NewWorker(herald.WorkerOptions{
		App:       "chat",
		Client:    temporalClient,
		HeraldURL: "http://127.0.0.1:8288",
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("task queue:", w.TaskQueue())

	fmt.Println(w.Register(Hello))
	fmt.Println(w.Register(Hello))
	fmt.Println(w.Register(nil))
	fmt.Println(w.Register(herald.NewFunction(herald.FunctionOpts{}, func(workflow.Context, herald.Input[any]) (any, error) { return nil, nil })))

	fmt.Println(w.RegisterSteps(Greet))
	fmt.Println(w.RegisterSteps(WordCount))
	fmt.Println(w.RegisterSteps(func(context.Context) error { return nil }))

	// Output:
	// herald: WorkerOptions.Client is required (a Temporal client.Client)
	// task queue: herald-chat
	// <nil>
	// herald: function "hello" is registered twice
	// herald: nil function; create functions with herald.NewFunction
	// herald: a function needs an ID
	// <nil>
	// herald: step function github.com/herald-run/herald_test.WordCount must return (T, error) or error
	// herald: step function github.com/herald-run/herald_test.ExampleNewWorker.func2 is anonymous; declare it as a named function or method so every worker can run it
}
